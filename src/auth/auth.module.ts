import { Module } from '@nestjs/common';
import { JwtModule } from '@nestjs/jwt';
import { JwtAuthGuard, UserIdGuard } from './auth.guards';
import { OrganizationsService } from './organizations.service';
import { TokensService } from './tokens.service';
import { UsersService } from './users.service';

@Module({
  imports: [JwtModule.register({})],
  providers: [OrganizationsService, UsersService, TokensService, JwtAuthGuard, UserIdGuard],
  exports: [OrganizationsService, UsersService, TokensService, JwtAuthGuard, UserIdGuard],
})
export class AuthModule {}
