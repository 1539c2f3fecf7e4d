import { Module } from '@nestjs/common';
import { JwtModule } from '@nestjs/jwt';
import { TypeOrmModule } from '@nestjs/typeorm';
import { JwtAuthGuard, UserIdGuard } from './auth.guards';
import { OrganizationEntity } from './organization.entity';
import { RevokedTokenEntity } from './revoked-token.entity';
import { UserEntity } from './user.entity';
import { RequestAuthenticator } from './request-authenticator';
import { OrganizationsService } from './organizations.service';
import { TokensService } from './tokens.service';
import { UsersService } from './users.service';

@Module({
  imports: [JwtModule.register({}), TypeOrmModule.forFeature([OrganizationEntity, UserEntity, RevokedTokenEntity])],
  providers: [OrganizationsService, UsersService, TokensService, RequestAuthenticator, JwtAuthGuard, UserIdGuard],
  exports: [OrganizationsService, UsersService, TokensService, RequestAuthenticator, JwtAuthGuard, UserIdGuard],
})
export class AuthModule {}
